"""LLM brains: the MLE-STAR roles answered by a language model (Gemini, OpenAI-compatible, replay).

  settings.py  LLMSettings (stored with the run; no secrets)   secrets.py  keys, redaction
  answers.py   parsing answers into typed objects              pricing.py  cost per call
  clients.py   the chat-client interface and its errors        gemini.py   google-genai client
  openai_compat.py  /v1/chat/completions client                 replay.py   cassettes
  brain.py     LLMBrain: prompts -> client -> parsed answers, retries, accounting
"""
