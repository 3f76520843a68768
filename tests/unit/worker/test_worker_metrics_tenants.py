"""The per-tenant gauges keep their label's cardinality bounded: the top tenants by name, the rest summed."""

from prometheus_client import REGISTRY

from tokentail.worker.metrics import TOP_TENANTS, show_tenant_runs


def _shown() -> dict[tuple[str, str], float]:
    return {
        (sample.labels["tenant"], sample.labels["state"]): sample.value
        for metric in REGISTRY.collect()
        if metric.name == "tokentail_tenant_runs"
        for sample in metric.samples
    }


def test_the_top_tenants_are_shown_by_name_and_the_rest_as_other() -> None:
    figures = {f"t{i:02}": (i, 1) for i in range(TOP_TENANTS + 5)}
    show_tenant_runs(figures)
    shown = _shown()
    names = {tenant for tenant, _ in shown}
    assert len(names) == TOP_TENANTS + 1 and "other" in names and "t00" not in names
    assert shown[("other", "waiting")] == sum(range(5)) and shown[("other", "running")] == 5
    assert shown[(f"t{TOP_TENANTS + 4:02}", "waiting")] == TOP_TENANTS + 4
    show_tenant_runs({"acme": (0, 2)})  # the others left: no longer shown
    assert _shown() == {("acme", "waiting"): 0, ("acme", "running"): 2}
