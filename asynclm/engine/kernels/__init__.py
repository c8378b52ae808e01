"""asynclm.engine.kernels: how the engine multiplies and fuses, chosen per machine.

`formats` (block-quantized weights, torch), `linear` (the ways to multiply by one weight),
`plan` (which kernel serves which batch size; no torch), `ops` (fused decoder ops, torch and
native), `native` (the C++ sources in `csrc/`, built once per machine), `check` (the native ops
agree with torch on this machine before they are used).
"""
