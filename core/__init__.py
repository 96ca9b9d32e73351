"""Building blocks several roles share, with nothing of ours beneath them: Standard Webhooks
signing (`signing`), fenced leases (`leases`) and the HTTP servers' edge: key check, failed-key
throttle, header-read timeout, quiet parse errors (`httpserver`). Each module documents its
own errors.
"""
