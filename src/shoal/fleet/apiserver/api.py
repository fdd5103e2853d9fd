"""The API verbs over the store, with the semantics of a real API server (no HTTP here).

What it adds to plain storage: uid, creationTimestamp, generation bumps on spec changes only, 409 on a
stale resourceVersion, a status subresource that writes only `.status` (and a main endpoint that
ignores it), the scale subresource, finalizers, ownerReference garbage collection, namespaces,
CustomResourceDefinitions that make their resources served, and schema admission of custom objects.
"""

from __future__ import annotations

import base64
import copy
import datetime
import secrets
import uuid
from typing import Any, Callable

from shoal.fleet.apiserver import admission, errors, patches, resources, scale, selectors
from shoal.fleet.apiserver.resources import ResourceType
from shoal.fleet.apiserver.store import Store

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NS_KEY = ("", "namespaces")
_CONTENT_EXEMPT = {"metadata", "status", "apiVersion", "kind"}


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """What a generation bump depends on: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in _CONTENT_EXEMPT}


def _fold_string_data(obj: dict[str, Any]) -> dict[str, Any]:
    """Secrets: the API server stores `stringData` base64-encoded under `data`."""
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    return obj


class ObjectApi:
    def __init__(self, store: Store, registry: resources.Registry,
                 on_types_changed: Callable[[], None] | None = None) -> None:
        self.store = store
        self.registry = registry
        self._on_types_changed = on_types_changed or (lambda: None)
        self._service_ips = 0
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self.registry.get("", "v1", "namespaces"), None, {"metadata": {"name": name}})

    def create_manifest(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Create any object from a manifest (as `kubectl create -f` would), by its apiVersion and kind."""
        group, _, version = doc.get("apiVersion", "").rpartition("/")
        rt = next((r for r in self.registry.by_group_version(group, version) if r.kind == doc.get("kind")), None)
        if rt is None:
            raise errors.ApiError(404, "NotFound", f"no resource serves {doc.get('apiVersion')} {doc.get('kind')}")
        return self.create(rt, (doc.get("metadata") or {}).get("namespace"), doc)

    # -- reads --------------------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.key, namespace or "", name)
        if obj is None:
            raise errors.not_found(rt.plural, name, rt.group)
        return obj

    def list(self, rt: ResourceType, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        labels = selectors.parse_label_selector(label_selector)
        fields = selectors.parse_field_selector(field_selector)
        return self.store.list(rt.key, namespace if rt.namespaced else None, labels, fields)

    # -- writes -------------------------------------------------------------------------------------------
    def create(self, rt: ResourceType, namespace: str | None, body: dict[str, Any],
               strict: bool = False, dry_run: bool = False) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.ApiError(400, "BadRequest", "the request body must be a JSON object")
        obj = dict(body)  # the caller hands the body over (fresh from JSON); only the top levels are written
        meta = obj["metadata"] = dict(body.get("metadata") or {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise errors.invalid(rt.kind, "", [{"field": "metadata.name", "reason": "FieldValueRequired",
                                                    "message": "name or generateName is required"}], rt.group)
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if rt.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, namespace):
                raise errors.ApiError(400, "BadRequest", "the namespace of the object does not match the URL")
            meta["namespace"] = namespace
            if self.store.get(NS_KEY, "", namespace) is None:
                raise errors.not_found("namespaces", namespace)
        else:
            meta.pop("namespace", None)
        if self.store.get(rt.key, meta.get("namespace", ""), meta["name"]) is not None:
            raise errors.already_exists(rt.plural, meta["name"], rt.group)
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.has_generation:
            meta["generation"] = 1
        obj = self._admit(rt, obj, strict)
        if rt.key == ("", "secrets"):
            obj = _fold_string_data(obj)
        if rt.key == NS_KEY:
            obj["status"] = {"phase": "Active"}
        if rt.key == ("apps", "deployments"):
            obj["spec"] = dict(obj.get("spec") or {})
            obj["spec"].setdefault("replicas", 1)
        if rt.key == ("", "services"):
            obj["spec"] = dict(obj.get("spec") or {})
            if obj["spec"].get("type", "ClusterIP") == "ClusterIP" and not obj["spec"].get("clusterIP"):
                self._service_ips += 1  # from the conventional service range, never reused
                obj["spec"]["clusterIP"] = f"10.96.{self._service_ips // 250}.{self._service_ips % 250 + 1}"
        if dry_run:  # admitted and defaulted, but neither stored nor served
            return obj
        if rt.key == CRD_KEY:
            obj = self._establish_crd(obj)
        stored = self.store.put(rt.key, obj, "ADDED")
        owners = [r.get("uid") for r in meta.get("ownerReferences") or ()]
        if owners and all(self.store.by_uid(uid) is None for uid in owners):
            # the real garbage collector deletes a dependent whose owners are all gone, also one created after them
            # (a controller's late write); it does so moments later, the emulator at once
            self._remove(rt.key, meta.get("namespace", ""), meta["name"], True)
        return stored

    def replace(self, rt: ResourceType, namespace: str | None, name: str, body: dict[str, Any],
                subresource: str | None = None, strict: bool = False, dry_run: bool = False) -> dict[str, Any]:
        old = self.get(rt, namespace, name)
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, name, rt.group)
        return self._write(rt, old, dict(body), subresource, strict, dry_run)

    def patch(self, rt: ResourceType, namespace: str | None, name: str, content_type: str, body: Any,
              subresource: str | None = None, strict: bool = False, dry_run: bool = False) -> dict[str, Any]:
        old = self.get(rt, namespace, name)
        if isinstance(body, dict):
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, name, rt.group)
        new = patches.apply_patch(content_type, old, body)  # patching builds new dicts, never edits `old`
        return self._write(rt, old, new, subresource, strict, dry_run)

    def _write(self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None,
               strict: bool, dry_run: bool = False) -> dict[str, Any]:
        old_meta = old["metadata"]
        # Stored objects are never edited in place: new versions share unchanged subtrees with old ones.
        if subresource == "status":
            result = dict(old, metadata=dict(old_meta))
            result["status"] = new.get("status")
            if result["status"] is None:
                del result["status"]
        else:
            result = dict(new)
            if rt.status:
                result.pop("status", None)
                if "status" in old:
                    result["status"] = old["status"]
            meta = result["metadata"] = dict(result.get("metadata") or {})
            for fixed in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "generation"):
                if fixed in old_meta:
                    meta[fixed] = old_meta[fixed]
                else:
                    meta.pop(fixed, None)
            result["apiVersion"], result["kind"] = old["apiVersion"], old["kind"]
            result = self._admit(rt, result, strict)
            if rt.key == ("", "secrets"):
                result = _fold_string_data(result)
            if rt.has_generation and _content(result) != _content(old):
                result["metadata"]["generation"] = old_meta.get("generation", 0) + 1
        result["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if result == old or dry_run:
            return result if dry_run else old  # a no-op write changes nothing, not even the resourceVersion
        if rt.key == CRD_KEY:
            result = self._establish_crd(result)
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            self.store.put(rt.key, result, "MODIFIED")
            return self._remove(rt.key, result["metadata"].get("namespace", ""), result["metadata"]["name"], True)
        return self.store.put(rt.key, result, "MODIFIED")

    def delete(self, rt: ResourceType, namespace: str | None, name: str,
               propagation: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        obj = self.get(rt, namespace, name)
        if dry_run:
            return obj
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return obj
            marked = copy.deepcopy(obj)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return self.store.put(rt.key, marked, "MODIFIED")
        return self._remove(rt.key, meta.get("namespace", ""), name, propagation != "Orphan")

    def _remove(self, res: tuple[str, str], namespace: str, name: str, collect: bool) -> dict[str, Any]:
        obj = self.store.remove(res, namespace, name)
        assert obj is not None
        uid = obj["metadata"]["uid"]
        if res == NS_KEY:
            self._delete_namespace_contents(name)
        if res == CRD_KEY:
            self._unregister_crd(obj)
        if collect:
            self._collect_garbage(uid)
        else:
            self._orphan(uid)
        return obj

    # -- scale subresource --------------------------------------------------------------------------------
    def get_scale(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        if rt.scale is None:
            raise errors.ApiError(404, "NotFound", f"the server could not find the requested resource "
                                                   f"({rt.plural}/scale)")
        return scale.scale_view(rt.scale, self.get(rt, namespace, name))

    def write_scale(self, rt: ResourceType, namespace: str | None, name: str,
                    content_type: str | None, body: Any) -> dict[str, Any]:
        current = self.get_scale(rt, namespace, name)
        wanted = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, name, rt.group)
        new_scale = patches.apply_patch(content_type, current, body) if content_type else body
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid("Scale", name, [{"field": "spec.replicas", "reason": "FieldValueInvalid",
                                                  "message": "must be a non-negative integer"}], "autoscaling")
        old = self.get(rt, namespace, name)
        self._write(rt, old, scale.with_replicas(rt.scale, old, replicas), None, False)
        return self.get_scale(rt, namespace, name)

    # -- internals ----------------------------------------------------------------------------------------
    def _admit(self, rt: ResourceType, obj: dict[str, Any], strict: bool) -> dict[str, Any]:
        if not rt.schema:
            return obj
        admitted, causes = admission.admit(rt.schema, obj, strict=strict)
        if causes:
            raise errors.invalid(rt.kind, obj["metadata"].get("name", ""), causes, rt.group)
        return admitted

    def _establish_crd(self, crd: dict[str, Any]) -> dict[str, Any]:
        try:
            types = resources.from_crd(crd)
        except KeyError as exc:
            raise errors.invalid("CustomResourceDefinition", crd["metadata"]["name"], [
                {"field": f"spec.{exc.args[0]}", "reason": "FieldValueRequired", "message": "Required value"}],
                "apiextensions.k8s.io") from exc
        spec = crd["spec"]
        self.registry.remove_crd(spec["group"], spec["names"]["plural"])
        for rt in types:
            self.registry.add(rt)
        now = now_rfc3339()
        crd["status"] = {
            "acceptedNames": spec["names"],
            "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        }
        self._on_types_changed()
        return crd

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        res = (spec["group"], spec["names"]["plural"])
        for rt, namespace, name in [(res, o["metadata"].get("namespace", ""), o["metadata"]["name"])
                                    for o in self.store.list(res, None)]:
            self._remove(rt, namespace, name, True)
        self.registry.remove_crd(*res)
        self._on_types_changed()

    def _delete_namespace_contents(self, namespace: str) -> None:
        for res, names in self.store.namespaced_resources(namespace):
            for name in names:
                if self.store.get(res, namespace, name) is not None:
                    self._remove(res, namespace, name, True)

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background propagation: dependents whose owners are all gone are deleted, transitively."""
        pending = [owner_uid]
        while pending:
            uid = pending.pop()
            for key in self.store.dependents(uid):
                res, namespace, name = key
                obj = self.store.get(res, namespace, name)
                if obj is None:
                    continue
                owners = [r["uid"] for r in obj["metadata"].get("ownerReferences") or ()]
                if any(self.store.by_uid(o) is not None for o in owners):
                    continue
                if obj["metadata"].get("finalizers"):
                    if not obj["metadata"].get("deletionTimestamp"):
                        marked = copy.deepcopy(obj)
                        marked["metadata"]["deletionTimestamp"] = now_rfc3339()
                        self.store.put(res, marked, "MODIFIED")
                    continue
                removed = self.store.remove(res, namespace, name)
                if removed is not None:
                    pending.append(removed["metadata"]["uid"])

    def _orphan(self, owner_uid: str) -> None:
        for res, namespace, name in self.store.dependents(owner_uid):
            obj = copy.deepcopy(self.store.get(res, namespace, name))
            obj["metadata"]["ownerReferences"] = [
                r for r in obj["metadata"].get("ownerReferences") or () if r["uid"] != owner_uid]
            self.store.put(res, obj, "MODIFIED")
