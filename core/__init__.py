"""Types and the exception tree shared by every package (imports nothing of ours)."""
