"""``cmg_faults_active{role,fault}``: the faults switched on now, as a gauge read at every scrape."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from mock_site.faults.registry import FaultRegistry


class ActiveFaultsCollector:
    """``cmg_faults_active{role,fault}``: 1 while a fault is on, so dashboards can draw real fault windows."""

    def __init__(self, faults: FaultRegistry) -> None:
        self.faults = faults

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("cmg_faults_active", "Faults switched on now (1 per active fault and role).",
                                   labels=["role", "fault"])
        for fault in self.faults.active():
            family.add_metric([fault.role, fault.name], 1.0)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
