"""The courts' own rules: who sees which courts' data (上下一体, ``visibility``) and the court's day in China
Standard Time (``duty_day``), which rosters and statistics follow."""
