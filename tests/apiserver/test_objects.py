"""Object semantics of the emulator over real HTTP: metadata, generation, subresources, conflicts, GC."""

from __future__ import annotations

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
ISVC = "/apis/shoal.dev/v1alpha1/namespaces/default/inferenceservices"


def isvc(name: str, **spec) -> dict:
    return {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": name},
            "spec": {"model": {"name": "m", "uri": "pvc://models/m"}, **spec}}


async def test_create_fills_metadata_and_namespace(client):
    status, obj = await client.post(CM, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert status == 201
    meta = obj["metadata"]
    assert meta["namespace"] == "default" and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert obj["apiVersion"] == "v1" and obj["kind"] == "ConfigMap"
    status, again = await client.post(CM, {"metadata": {"name": "a"}})
    assert status == 409 and again["reason"] == "AlreadyExists"


async def test_generate_name_and_missing_namespace(client):
    status, obj = await client.post(CM, {"metadata": {"generateName": "ev-"}})
    assert status == 201 and obj["metadata"]["name"].startswith("ev-") and len(obj["metadata"]["name"]) > 3
    status, err = await client.post("/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "x"}})
    assert status == 404 and "nowhere" in err["message"]


async def test_resource_version_grows_and_stale_writes_conflict(client):
    _, obj = await client.post(CM, {"metadata": {"name": "a"}, "data": {"k": "1"}})
    stale = obj["metadata"]["resourceVersion"]
    status, updated = await client.put(f"{CM}/a", {**obj, "data": {"k": "2"}})
    assert status == 200 and int(updated["metadata"]["resourceVersion"]) > int(stale)
    status, err = await client.put(f"{CM}/a", {**obj, "data": {"k": "3"}})
    assert status == 409 and err["reason"] == "Conflict"
    status, err = await client.patch(f"{CM}/a", {"metadata": {"resourceVersion": stale}, "data": {"k": "4"}})
    assert status == 409
    status, same = await client.patch(f"{CM}/a", {"data": {"k": "2"}})
    assert same["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]  # no-op: no new version


async def test_generation_bumps_on_spec_changes_only(client, with_crd):
    _, obj = await client.post(ISVC, isvc("chat"))
    assert obj["metadata"]["generation"] == 1
    _, obj = await client.patch(f"{ISVC}/chat", {"metadata": {"labels": {"team": "a"}}})
    assert obj["metadata"]["generation"] == 1
    _, obj = await client.patch(f"{ISVC}/chat/status", {"status": {"replicas": 1}})
    assert obj["metadata"]["generation"] == 1 and obj["status"]["replicas"] == 1
    _, obj = await client.patch(f"{ISVC}/chat", {"spec": {"replicas": 3}})
    assert obj["metadata"]["generation"] == 2


async def test_status_subresource_is_separate(client, with_crd):
    await client.post(ISVC, isvc("chat"))
    _, obj = await client.patch(f"{ISVC}/chat", {"status": {"replicas": 7}, "spec": {"replicas": 2}})
    assert "status" not in obj and obj["spec"]["replicas"] == 2  # the main endpoint ignores status
    _, obj = await client.patch(f"{ISVC}/chat/status", {"status": {"replicas": 2}, "spec": {"replicas": 9}})
    assert obj["status"]["replicas"] == 2 and obj["spec"]["replicas"] == 2  # status endpoint ignores spec


async def test_label_and_field_selectors(client):
    for name, labels in [("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}), ("c", {})]:
        await client.post(CM, {"metadata": {"name": name, "labels": labels}})

    async def names(**params):
        _, body = await client.get(CM, **params)
        return sorted(o["metadata"]["name"] for o in body["items"])

    assert await names(labelSelector="app=x") == ["a"]
    assert await names(labelSelector="app!=x") == ["b", "c"]
    assert await names(labelSelector="app in (x,y)") == ["a", "b"]
    assert await names(labelSelector="app notin (x)") == ["b", "c"]
    assert await names(labelSelector="app,!tier") == ["b"]
    assert await names(fieldSelector="metadata.name=c") == ["c"]
    status, _ = await client.get(CM, labelSelector="app in (x")
    assert status == 400


async def test_listing_across_namespaces(client):
    await client.post("/api/v1/namespaces", {"metadata": {"name": "ml"}})
    await client.post(CM, {"metadata": {"name": "a"}})
    await client.post("/api/v1/namespaces/ml/configmaps", {"metadata": {"name": "b"}})
    _, body = await client.get("/api/v1/configmaps")
    assert {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in body["items"]} == {("default", "a"), ("ml", "b")}
    assert body["kind"] == "ConfigMapList" and body["metadata"]["resourceVersion"]
    await client.delete("/api/v1/namespaces/ml")
    _, body = await client.get("/api/v1/configmaps")
    assert [o["metadata"]["name"] for o in body["items"]] == ["a"]


async def test_scale_subresource_of_deployments_and_custom_resources(client, with_crd):
    deploy = {"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                                                    "template": {"metadata": {"labels": {"app": "web"}}}}}
    await client.post(DEPLOY, deploy)
    status, scale = await client.patch(f"{DEPLOY}/web/scale", {"spec": {"replicas": 4}})
    assert status == 200 and scale["kind"] == "Scale" and scale["spec"]["replicas"] == 4
    assert scale["status"]["selector"] == "app=web"
    _, obj = await client.get(f"{DEPLOY}/web")
    assert obj["spec"]["replicas"] == 4 and obj["metadata"]["generation"] == 2
    await client.post(ISVC, isvc("chat"))
    await client.patch(f"{ISVC}/chat/status", {"status": {"replicas": 1, "selector": "shoal.dev/service=chat"}})
    status, scale = await client.patch(f"{ISVC}/chat/scale", {"spec": {"replicas": 3}})
    assert status == 200 and scale["status"] == {"replicas": 1, "selector": "shoal.dev/service=chat"}
    _, obj = await client.get(f"{ISVC}/chat")
    assert obj["spec"]["replicas"] == 3


async def test_owner_references_are_garbage_collected(client):
    _, owner = await client.post(CM, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    _, child = await client.post(CM, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    grand_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "child", "uid": child["metadata"]["uid"]}
    await client.post(CM, {"metadata": {"name": "grandchild", "ownerReferences": [grand_ref]}})
    await client.post(CM, {"metadata": {"name": "unrelated"}})
    status, _ = await client.delete(f"{CM}/owner")
    assert status == 200
    _, body = await client.get(CM)
    assert [o["metadata"]["name"] for o in body["items"]] == ["unrelated"]


async def test_a_dependent_created_after_its_owner_is_gone_is_collected(client):
    # a controller's late create (its owner deleted meanwhile) would be a leak; the real garbage collector removes it
    _, owner = await client.post(CM, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await client.delete(f"{CM}/owner")
    status, late = await client.post(CM, {"metadata": {"name": "late", "ownerReferences": [ref]}})
    assert status == 201 and late["metadata"]["name"] == "late"
    status, _ = await client.get(f"{CM}/late")
    assert status == 404


async def test_orphan_propagation_keeps_dependents(client):
    _, owner = await client.post(CM, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await client.post(CM, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    await client.delete(f"{CM}/owner", {"propagationPolicy": "Orphan"})
    status, child = await client.get(f"{CM}/child")
    assert status == 200 and not child["metadata"].get("ownerReferences")


async def test_finalizers_hold_deletion_until_removed(client):
    await client.post(CM, {"metadata": {"name": "held", "finalizers": ["x/y"]}})
    status, marked = await client.delete(f"{CM}/held")
    assert status == 200 and marked["metadata"]["deletionTimestamp"]
    status, _ = await client.get(f"{CM}/held")
    assert status == 200
    await client.patch(f"{CM}/held", {"metadata": {"finalizers": None}})
    status, _ = await client.get(f"{CM}/held")
    assert status == 404


async def test_invalid_custom_resource_is_rejected_naming_the_field(client, with_crd):
    status, err = await client.post(ISVC, isvc("bad", autoscaling={"minReplicas": 5, "maxReplicas": 2}))
    assert status == 422 and err["reason"] == "Invalid"
    assert [c["field"] for c in err["details"]["causes"]] == ["spec.autoscaling.minReplicas"]
    status, err = await client.post(ISVC, isvc("bad", slo={"ttftP95Ms": 0}))
    assert status == 422 and "spec.slo.ttftP95Ms" in err["message"]
    status, err = await client.post(ISVC, isvc("bad", bogus=1), fieldValidation="Strict")
    assert status == 422 and "spec.bogus" in err["message"]
    status, obj = await client.post(ISVC, isvc("lenient", bogus=1))
    assert status == 201 and "bogus" not in obj["spec"]  # pruned, as without strict validation
    assert obj["spec"]["engine"]["maxNumSeqs"] == 256  # defaults applied


async def test_crd_registration_serves_and_unserves_the_resource(client, crd):
    status, _ = await client.get(ISVC)
    assert status == 404
    _, created = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert {c["type"] for c in created["status"]["conditions"]} == {"Established", "NamesAccepted"}
    _, resources = await client.get("/apis/shoal.dev/v1alpha1")
    names = {r["name"] for r in resources["resources"]}
    assert names == {"inferenceservices", "inferenceservices/status", "inferenceservices/scale"}
    _, groups = await client.get("/apis")
    assert "shoal.dev" in {g["name"] for g in groups["groups"]}
    await client.post(ISVC, isvc("chat"))
    await client.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/inferenceservices.shoal.dev")
    status, _ = await client.get(ISVC)
    assert status == 404


async def test_core_discovery_lives_under_api(client):
    _, versions = await client.get("/api")
    assert versions["kind"] == "APIVersions" and versions["versions"] == ["v1"]
    _, core = await client.get("/api/v1")
    assert core["groupVersion"] == "v1" and "configmaps" in {r["name"] for r in core["resources"]}
    _, groups = await client.get("/apis")
    assert "" not in {g["name"] for g in groups["groups"]} and "v1" not in {g["name"] for g in groups["groups"]}


async def test_printer_columns_render_as_a_table(client, with_crd):
    await client.post(ISVC, isvc("chat"))
    await client.patch(f"{ISVC}/chat/status", {"status": {"replicas": 2, "conditions": [
        {"type": "Ready", "status": "True"}], "batch": {"maxNumSeqs": 64}}})
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    async with client.session.get(client.url + ISVC, headers=headers) as resp:
        table = await resp.json()
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Ready", "Replicas", "TTFT-P95", "ITL-P95", "Max-Seqs", "Age"]
    assert table["rows"][0]["cells"][:6] == ["chat", "True", 2, None, None, 64]
