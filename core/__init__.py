"""Building blocks several roles share, with nothing of ours beneath them: Standard Webhooks
signing (`signing`), fenced leases (`leases`) and the task supervisor (`supervisor`). Each
module documents its own errors.
"""
