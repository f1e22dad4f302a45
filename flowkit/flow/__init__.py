"""Flow engines, the quantization convention, `.flo` I/O, error measures and the colour wheel."""

from flowkit.flow.colorwheel import flow_to_color
from flowkit.flow.engines import ALGORITHMS, ENGINES, FlowEngine, create_engine
from flowkit.flow.flo import read_flo, write_flo
from flowkit.flow.metrics import angular_error, endpoint_error
from flowkit.flow.quantize import DEFAULT_BOUND, dequantize_flow, quantize_flow

__all__ = [
    "ALGORITHMS",
    "DEFAULT_BOUND",
    "ENGINES",
    "FlowEngine",
    "angular_error",
    "create_engine",
    "dequantize_flow",
    "endpoint_error",
    "flow_to_color",
    "quantize_flow",
    "read_flo",
    "write_flo",
]
