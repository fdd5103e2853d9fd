"""The series names and labels that Shoal's live metric registries expose, read from their exposition text."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

# What a sample's name adds to its family's name, per metric type (as Prometheus stores the series).
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "untyped": ("",),
    "info": ("_info",),
}


@dataclass(frozen=True)
class Series:
    name: str
    family: str
    kind: str
    labels: frozenset[str] | None  # None: a labelled metric with no child yet, whose label names are not exposed


def exposed_series(registry) -> dict[str, Series]:
    """Every series name a scrape of `registry` yields, with the labels it carries (incl. `le` for buckets)."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        labels = set()
        for sample in family.samples:
            labels |= set(sample.labels)
        for suffix in _SUFFIXES[family.type]:
            name = family.name + suffix
            series_labels = labels if suffix == "_bucket" else labels - {"le", "quantile"} | (
                {"quantile"} if family.type == "summary" and suffix == "" else set())
            out[name] = Series(name, family.name, family.type,
                               frozenset(series_labels) if family.samples else None)
    return out


def histogram_bounds(registry, family: str) -> list[float]:
    """Finite bucket upper bounds of one histogram family."""
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        if fam.name == family:
            return sorted({float(s.labels["le"]) for s in fam.samples
                           if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"})
    raise KeyError(f"no histogram family {family}")
