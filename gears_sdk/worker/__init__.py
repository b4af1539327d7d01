"""The worker side of the gear sandbox.

A worker is a separate process that loads exactly one installed gear and
answers the engine's hook calls over :mod:`gears_sdk.worker.protocol`. It
confines itself (:mod:`~gears_sdk.worker.confine`,
:mod:`~gears_sdk.worker.landlock`) before it imports any gear code. The host
side lives in ``marketplace.runtime``; this package never imports it.
"""
