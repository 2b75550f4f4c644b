"""What the software and the hardware sides share, and nothing else: the errors a user can see, the number
formats of docs/numerics.md (`Numerics`) and the frozen description of an encoded model (docs/format.md).

This package imports nothing else of sparselstm: `sparselstm.sw` produces these descriptions, `sparselstm.hw`
elaborates from them, `sparselstm.sim` checks against them, and none of the three imports another's code.
"""
