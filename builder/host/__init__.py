"""This machine's kdump: the recipe for the host, one capture per installed kernel, the
boot-time service, the kernel hooks, the crashkernel= reservation in GRUB, and the dumps
saved after a crash.

`enable` plans from facts read once (`probe`), then writes through `managed` (files
outside our own directories, replaced or removed only when they carry our marker) and
`captures` (our own directories, replaced whole through builder.atomic).
"""
