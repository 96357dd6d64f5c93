"""Enforcement operations (执行行动): what an operation is and how it may move (``models``), how it is shown
(``views``), the storage it needs (``port``) and the desk that runs one (``desk``)."""
