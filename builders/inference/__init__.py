"""Inference: talking to a model, for rl-pool's rollouts, eval and the cot teacher.

backends.py is the one place listing the generation backends (`make_backend`
picks one); each backend's transport has its own file: endpoint.py (any
OpenAI-compatible server) and local.py (a transformers model). Beside them:
cache.py (the response cache both use), models.py (loading a model and its
processor) and student.py (the student's prompt every consumer sends).
"""
