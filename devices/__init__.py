"""Edge targets: device profiles, transports (local, SSH, adb) and an emulated Raspberry Pi.

    >>> from devices.profiles import load_profile
    >>> load_profile("rpi4").cpu
    'Cortex-A72'

Modules: ``profiles`` (TOML profiles), ``transport`` (local/SSH/adb), ``target`` (``--host`` ->
transport), ``check`` (probe + traps), ``setup`` (offline wheel install), ``bench`` (the one
benchmark path, this host included), ``remote`` (a temp folder on a device), ``lce_benchmark``
(LCE's benchmark tool), ``emulator`` (the emulated Pi), ``cli`` (``edgebnn bench``, ``edgebnn
devices``). Imports the runtime and formats; no trainer, converter, torch or TensorFlow here.
"""
