"""Building blocks several roles share, with nothing of ours beneath them: Standard Webhooks
signing (`signing`), fenced leases (`leases`), stored format versions (`formats`), private
files (`files`), the task supervisor (`supervisor`), the HTTP servers' edge: key check,
failed-key throttle, header-read timeout, quiet parse errors (`httpserver`), what both
OpenAPI descriptions share (`openapi`) and the clock type (`clock`). Each module documents
its own errors.
"""
