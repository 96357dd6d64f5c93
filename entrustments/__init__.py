"""Entrustment between courts (执行委托): what an entrustment is and how it may move (``models``), how it is
shown (``views``), the storage it needs (``port``) and the desk that runs one (``desk``)."""
