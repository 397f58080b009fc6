"""SISO editing on SDXL(-Turbo): put a subject into a real scene photo.

    schedulers.py   FixedNoiseEulerAncestralScheduler: Euler-ancestral whose per-step noise is a
                    fixed list, with the exact inverse step and the noise-correction update
    renoise.py      ReNoise inversion of the scene photo (`renoise_invert`) and the differentiable
                    img2img regeneration from the inverted latent (`regenerate`)

Importing this package loads neither torch nor diffusers; import the modules themselves.
"""
