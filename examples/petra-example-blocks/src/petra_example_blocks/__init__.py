"""Example Petra custom block: a deadband filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from petra.blocks import BlockSpec, CustomBlock, Param, Port, PortType, StepContext

__all__ = ["Deadband"]


class Deadband(CustomBlock):
    """out follows in only when |in - out| > band; the first scan passes in through."""

    spec = BlockSpec(
        name="EXAMPLE_DEADBAND",
        category="custom",
        doc="out follows in only when it moved more than band from the last output",
        inputs=(Port("in", PortType.NUM),),
        outputs=(Port("out", PortType.FLOAT),),
        params=(Param("band", float, 0.0, min=0.0, doc="deadband, in the input's unit"),),
    )

    def init(self, params: Mapping[str, Any]) -> None:
        self.band = float(params["band"])
        self.last = 0.0

    def step(self, inputs: Mapping[str, float], ctx: StepContext) -> Mapping[str, float]:
        x = inputs["in"]
        if ctx.first_scan or abs(x - self.last) > self.band:
            self.last = x
        return {"out": self.last}
