"""One module per family of Dockerfile instruction the engine executes, each a function of a step.

``metadata`` (ENV LABEL CMD … and WORKDIR), ``run`` (RUN), ``copy`` (COPY, ADD, COPY --from);
``layering`` holds what the layer-making steps share. Each step computes its cache key, asks the
build (``context.StepContext``) for a hit, and otherwise makes its image on the node and records
it. The engine (``engine.py``) keeps the stage loop and picks the function for each instruction.
"""
