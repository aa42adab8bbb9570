"""Every projection by name: what the projector runs and what `projections rebuild NAME` takes."""

from __future__ import annotations

from domain.catalog import Catalog
from projections.analytics import AnalyticsProjection
from projections.balances import BalancesProjection
from projections.projection import Projection
from projections.transactions import TransactionsProjection
from projections.usage import UsageProjection

# Fixed names (the catalog only changes how they tag and price): what `rebuild NAME` accepts.
PROJECTION_NAMES = ("balances", "transactions", "usage", "analytics")


def build_projections(catalog: Catalog) -> dict[str, Projection]:
    projections: list[Projection] = [
        BalancesProjection(catalog),
        TransactionsProjection(),
        UsageProjection(catalog),
        AnalyticsProjection(catalog),
    ]
    assert tuple(p.name for p in projections) == PROJECTION_NAMES
    return {p.name: p for p in projections}
