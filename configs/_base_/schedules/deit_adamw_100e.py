# DeiT's optimisation recipe, 100 epochs: AdamW (wd 0.05, no decay on norms, biases, 1-D tensors, tokens,
# position embedding and gates), lr = 5e-4 * total batch / 512, linear warm-up for 5 epochs then cosine to 1e-5,
# no gradient clipping (DeiT's default), AMP (GPU). Shared ScaleNet tensors are parameters once, so the optimizer and
# weight decay see each of them once.
# The lr below assumes 8 GPUs x 128 images; it is rescaled with --auto-scale-lr for another total batch.
num_gpus = 8
batch_size_per_gpu = 128
base_lr = 5e-4 * num_gpus * batch_size_per_gpu / 512
max_epochs = 100
warmup_epochs = 5

optim_wrapper = dict(
    # fp16 autocast + dynamic loss scaling, as DeiT; bf16: --cfg-options optim_wrapper.dtype=bfloat16.
    # AMP needs a GPU: on CPU use --cfg-options optim_wrapper.type=OptimWrapper
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.gate_': dict(decay_mult=0.0),
        }),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-5, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(base_batch_size=num_gpus * batch_size_per_gpu, enable=False)
