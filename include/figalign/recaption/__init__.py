"""Recaptioning figures with a vision-language model behind a vLLM OpenAI-compatible API.

``prompt`` builds the request, ``client`` sends it (bounded, retried, errors classified),
``validate`` decides whether an answer is usable; the stage lives in
``figalign.stages.recaption``.
"""
