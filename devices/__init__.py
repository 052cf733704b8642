"""Edge targets: device profiles, transports (local, SSH, adb) and an emulated Raspberry Pi.

    >>> from devices.profiles import load_profile
    >>> load_profile("rpi4").cpu
    'Cortex-A72'

Modules: ``profiles`` (TOML profiles), ``transport`` (local/SSH/adb), ``target`` (``--host`` ->
transport), ``check`` (probe + traps), ``setup`` (offline wheel install), ``remote``
(``bench_remote``), ``emulator`` (the emulated Pi), ``cli`` (``edgebnn devices``). No torch, no
TensorFlow here.
"""
