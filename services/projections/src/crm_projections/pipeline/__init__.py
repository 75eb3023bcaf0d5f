"""The sales pipeline: open deals by stage, won and lost per period."""
