"""One module per stage, each with one entry function ``run(cfg)``.

The config's ``service._target_`` names the function (conf/service/<name>.yaml), so adding a
stage means adding a module and a YAML file; no dispatch code changes.
"""
