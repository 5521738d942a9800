"""Runnable examples: cryobench from the RL libraries people use (``python -m cryobench.examples.NAME``).

=========================  ===============================================================  =========
module                     what                                                             extra
=========================  ===============================================================  =========
``sb3_maskable_ppo``       sb3-contrib's MaskablePPO with the per-hole policy                ``sb3``
                           (``cryobench.policies``): train on training worlds, score on
                           the test split
``cleanrl_ppo``            a CleanRL-style single-file masked PPO, the per-hole network     (none)
                           written out in plain PyTorch
``tianshou_dqn``           Tianshou's DQN on the compact observation (masked candidates,     ``tianshou``
                           a replay buffer of 5.8 kB a transition), scored on the test split
``torchrl_ppo``            TorchRL's ``GymEnv`` and a masked categorical actor               ``torchrl``
``rl_zoo.yml``             an rl-baselines3-zoo hyperparameter file for ``ppo_mask``          ``sb3``
=========================  ===============================================================  =========

Each takes ``--small`` (a 600-hole twin and 120-minute sessions: what the tests run, in under a
minute) and ``--help``. Shared helpers (the small grid, scoring a policy) are in ``common``.
"""
