"""The local web dashboard: its routes, JSON API, security guard and static page, mounted into
the proxy app by `cli/serve_cmd.py`; every figure read through the same queries as `report`."""
