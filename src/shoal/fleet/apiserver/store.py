"""Indexed object storage with one global resourceVersion and watch fan-out.

Every operation costs the same at 5,000 objects as at 5: objects sit in dicts keyed by
resource -> namespace -> name, owners and uids are indexed, and a change is handed only to the
watchers of its resource (each event is serialized once, whatever the number of watchers).
"""

from __future__ import annotations

import asyncio
import collections
import json
from dataclasses import dataclass, field
from typing import Any

from shoal.fleet.apiserver import selectors

ResKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[ResKey, str, str]  # (resource, namespace or "", name)
HISTORY = 10_000  # events kept per resource for watches resuming from a resourceVersion


@dataclass
class Event:
    type: str
    obj: dict[str, Any]
    rv: int
    _line: bytes | None = None

    def line(self) -> bytes:
        if self._line is None:
            self._line = json.dumps({"type": self.type, "object": self.obj}, separators=(",", ":")).encode() + b"\n"
        return self._line


@dataclass(eq=False)
class Watcher:
    namespace: str | None
    labels: tuple[selectors.Requirement, ...] = ()
    fields: tuple[tuple[str, str, str], ...] = ()
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def wants(self, event: Event) -> bool:
        namespace = event.obj.get("metadata", {}).get("namespace")
        if self.namespace is not None and namespace != self.namespace:
            return False
        return selectors.matches(event.obj, self.labels, self.fields)


class Store:
    def __init__(self) -> None:
        self._rv = 0
        self._objects: dict[ResKey, dict[str, dict[str, dict[str, Any]]]] = collections.defaultdict(dict)
        self._uids: dict[str, ObjKey] = {}
        self._dependents: dict[str, set[ObjKey]] = collections.defaultdict(set)
        self._history: dict[ResKey, collections.deque[Event]] = collections.defaultdict(
            lambda: collections.deque(maxlen=HISTORY))
        self._watchers: dict[ResKey, set[Watcher]] = collections.defaultdict(set)
        self.writes = 0

    @property
    def resource_version(self) -> int:
        return self._rv

    def next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def get(self, res: ResKey, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects[res].get(namespace, {}).get(name)

    def by_uid(self, uid: str) -> ObjKey | None:
        return self._uids.get(uid)

    def dependents(self, uid: str) -> list[ObjKey]:
        return list(self._dependents.get(uid, ()))

    def list(self, res: ResKey, namespace: str | None, labels=(), fields=()) -> list[dict[str, Any]]:
        buckets = self._objects[res]
        spaces = [buckets.get(namespace, {})] if namespace is not None else list(buckets.values())
        return [obj for space in spaces for obj in space.values() if selectors.matches(obj, labels, fields)]

    def namespaced_resources(self, namespace: str) -> list[tuple[ResKey, list[str]]]:
        return [(res, list(spaces[namespace])) for res, spaces in self._objects.items() if spaces.get(namespace)]

    def count(self) -> int:
        return sum(len(space) for spaces in self._objects.values() for space in spaces.values())

    def put(self, res: ResKey, obj: dict[str, Any], event_type: str) -> dict[str, Any]:
        """Store (create or replace) an object under a fresh resourceVersion and tell the watchers."""
        meta = obj["metadata"]
        meta["resourceVersion"] = self.next_rv()
        namespace, name = meta.get("namespace", ""), meta["name"]
        key: ObjKey = (res, namespace, name)
        old = self.get(res, namespace, name)
        if old is not None:
            self._unindex_owners(key, old)
        self._objects[res].setdefault(namespace, {})[name] = obj
        self._uids[meta["uid"]] = key
        for ref in meta.get("ownerReferences") or ():
            self._dependents[ref["uid"]].add(key)
        self._emit(res, Event(event_type, obj, self._rv))
        return obj

    def remove(self, res: ResKey, namespace: str, name: str) -> dict[str, Any] | None:
        space = self._objects[res].get(namespace)
        obj = space.pop(name, None) if space else None
        if obj is None:
            return None
        if not space:
            del self._objects[res][namespace]
        key: ObjKey = (res, namespace, name)
        self._unindex_owners(key, obj)
        self._uids.pop(obj["metadata"]["uid"], None)
        obj = dict(obj, metadata=dict(obj["metadata"], resourceVersion=self.next_rv()))
        self._emit(res, Event("DELETED", obj, self._rv))
        return obj

    def _unindex_owners(self, key: ObjKey, obj: dict[str, Any]) -> None:
        for ref in obj["metadata"].get("ownerReferences") or ():
            dependents = self._dependents.get(ref["uid"])
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[ref["uid"]]

    def _emit(self, res: ResKey, event: Event) -> None:
        self.writes += 1
        self._history[res].append(event)
        for watcher in self._watchers.get(res, ()):
            if watcher.wants(event):
                watcher.queue.put_nowait(event)

    def subscribe(self, res: ResKey, watcher: Watcher, since: int | None) -> list[Event] | None:
        """Register a watcher; returns the missed events after `since`, or None when they are gone (410)."""
        backlog: list[Event] = []
        if since is not None and since < self._rv:
            history = self._history.get(res)
            if history and len(history) == history.maxlen and history[0].rv > since + 1:
                return None
            backlog = [e for e in history or () if e.rv > since and watcher.wants(e)]
        self._watchers[res].add(watcher)
        return backlog

    def unsubscribe(self, res: ResKey, watcher: Watcher) -> None:
        self._watchers[res].discard(watcher)

    def close_watchers(self) -> None:
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.queue.put_nowait(None)
