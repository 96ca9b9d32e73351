"""Building blocks several roles share, with nothing of ours beneath them: Standard Webhooks
signing (`signing`) and fenced leases (`leases`). Each module documents its own errors.
"""
