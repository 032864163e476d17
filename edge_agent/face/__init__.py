"""Face verification: the pipeline (edge_agent.face.pipeline), the worker process that owns the
camera and the models (edge_agent.face.worker), and the light result types (verdicts).

Nothing here is imported eagerly: `import edge_agent.face` must not load dlib.
"""
