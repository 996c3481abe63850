"""The runtime launcher: every image's entrypoint (standard library only).

It is copied into each image, so nothing here may import anything but the standard library:
`measure` computes the measurement (also used by the image builder), `der` finds the public key
in the CAS certificate, `launcher` attests to CAS and execs the provisioned program.
"""
