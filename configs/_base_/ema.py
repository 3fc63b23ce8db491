# Optional EMA of the weights (DeiT's model EMA, decay 0.99996 -> mmengine momentum 4e-5). Use it by adding
# '../_base_/ema.py' to a config's _base_ list. Validation then uses the EMA weights, and mmengine saves them as
# the checkpoints' state_dict (the raw weights go to ema_state_dict): tools/extract_backbone.py extracts the EMA
# weights by default, the raw ones with --no-ema.
custom_hooks = [dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=4e-5, priority='ABOVE_NORMAL')]
