"""Give each local replica its own cores, so that one more replica is really one more share of compute.

Replicas that share cores only slice the same CPU time thinner; the autoscaler would then see no gain from scaling
up. So the machine's cores are cut into fixed slots of `cores_per_replica`, each replica pinned to one slot, and the
fleet can only run as many replicas as there are slots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CoreSlots:
    slots: tuple[tuple[int, ...], ...]

    @property
    def capacity(self) -> int:
        return len(self.slots)


def available_cores() -> tuple[int, ...]:
    """Cores this process may run on (respects taskset and cgroup cpusets, unlike os.cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def make_slots(cores: tuple[int, ...], cores_per_replica: int) -> CoreSlots:
    if cores_per_replica < 1:
        raise ValueError(f"cores_per_replica must be >= 1, got {cores_per_replica}")
    if not cores:
        raise ValueError("no cores available to run replicas on")
    count = len(cores) // cores_per_replica
    if count == 0:
        raise ValueError(
            f"cores_per_replica={cores_per_replica} but this machine offers only {len(cores)} core(s); "
            f"use --cores-per-replica {len(cores)} or fewer"
        )
    return CoreSlots(tuple(tuple(cores[i * cores_per_replica : (i + 1) * cores_per_replica]) for i in range(count)))


def assign_slot(slots: CoreSlots, used: dict[str, int]) -> int:
    """The slot for a new replica: the least used one (ties: lowest index). `used` maps pod name -> slot index.

    More replicas than slots may exist briefly (a rollout surges, a drain overlaps a start); they share the
    least loaded slot rather than failing.
    """
    load = [0] * slots.capacity
    for index in used.values():
        if 0 <= index < slots.capacity:
            load[index] += 1
    return min(range(slots.capacity), key=lambda i: (load[i], i))


def capacity_note(slots: CoreSlots, cores_per_replica: int, requested_max: int) -> str:
    """A plain sentence for the demo and its report on how far this machine can scale."""
    total = sum(len(s) for s in slots.slots)
    cap = min(slots.capacity, requested_max)
    note = (
        f"this machine offers {total} core(s); at {cores_per_replica} core(s) per replica it can run "
        f"{slots.capacity} replica(s) with real extra capacity, so maxReplicas is {cap}"
    )
    if slots.capacity < requested_max:
        note += f" (asked for {requested_max}: more replicas would only share the same cores)"
    if slots.capacity <= 2:
        note += "; the operator, Prometheus, the API emulator and the load generator share those same cores"
    return note
