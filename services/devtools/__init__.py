"""Development tools: the demo-sample generator, benchmarks, the local service harness, GPU benchmarks
and the emotion-head trainer. Nothing in the runtime package (``moodbgm``) imports this package."""
