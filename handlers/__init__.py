"""The conversation: platform-free dialogues. An Incoming in, a list of Reply out."""
