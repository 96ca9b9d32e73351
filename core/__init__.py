"""Building blocks several roles share, with nothing of ours beneath them: Standard Webhooks
signing (`signing`), fenced leases (`leases`), stored format versions (`formats`), private
files (`files`), the task supervisor (`supervisor`) and the clock type (`clock`). Each
module documents its own errors.
"""
