"""OpenTelemetry traces and metrics for actorflow (`pip install 'actorflow[otel]'`).

```python
from actorflow.otel import ActorflowInstrumentor
ActorflowInstrumentor().instrument(tracer_provider=None, meter_provider=None)
```
"""

from ._instrumentor import ActorflowInstrumentor

__all__ = ["ActorflowInstrumentor"]
