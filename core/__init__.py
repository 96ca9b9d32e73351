"""Building blocks several roles share, with nothing of ours beneath them: Standard Webhooks
signing (`signing`), fenced leases (`leases`) and stored format versions (`formats`). Each
module documents its own errors.
"""
