"""Consultation rooms (执行会商): centres of several courts, and where wanted a unit on the scene, confer."""
