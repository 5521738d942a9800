"""A per-hole policy for Stable-Baselines3 / sb3-contrib's MaskablePPO (extra ``sb3``).

SB3's default ``MultiInputPolicy`` flattens the N x 42 feature matrix into one vector, so its
first layer alone holds N x 42 x 64 weights (12 M at N = 3518) and it learns every hole
separately. Here one small network is shared by every hole, pointer style:

- :class:`PerHoleExtractor` embeds each hole's feature row with the same MLP: (B, N, 42) -> (B, N, D),
  and passes the row on beside its embedding;
- :class:`PointerHead` scores each hole with one more shared MLP on its embedding plus a linear
  term on its raw row (the linear term learns "predicted good and near" within a few updates):
  the N scores are the action logits (MaskablePPO masks the visited holes); the value comes
  from the embeddings pooled over holes (mean and max).

No weight depends on N, so a model trained on one split (or grid) plays any other: load it
with the other environment's spaces (:func:`load_per_hole_model`).

.. code-block:: python

    from sb3_contrib import MaskablePPO
    from cryobench.policies import PerHolePolicy

    env = gym.make("cryobench/Aldolase-v1", split="train", new_world_each_reset=True)
    model = MaskablePPO(PerHolePolicy, env, n_steps=256, batch_size=64)
"""

from __future__ import annotations

from typing import Any

try:
    import torch
    from gymnasium import spaces
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        f"cryobench.policies needs stable-baselines3 and sb3-contrib ({error}); "
        "install them with: pip install 'cryobench[sb3]'"
    ) from error

from cryobench.errors import InputError

#: The observation key the policy reads; every other key (the mask, the current hole) is in its columns already.
FEATURES_KEY = "features"


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PerHoleExtractor(BaseFeaturesExtractor):
    """Each hole's feature row and its embedding by one shared MLP: (B, N, F) -> (B, N, F + ``embedding``).

    ``features_dim`` is that per-hole width (SB3 uses it to size the head), not a flat size.
    """

    def __init__(self, observation_space: spaces.Dict, embedding: int = 64) -> None:
        if not isinstance(observation_space, spaces.Dict) or FEATURES_KEY not in observation_space.spaces:
            raise InputError(
                f"PerHoleExtractor: expected a cryobench Dict observation space with a {FEATURES_KEY!r} key, "
                f"got {observation_space}"
            )
        shape = observation_space[FEATURES_KEY].shape
        if len(shape) != 2:
            raise InputError(f"PerHoleExtractor: expected features of shape (holes, columns), got {shape}")
        super().__init__(observation_space, features_dim=shape[1] + embedding)
        self.n_columns = shape[1]
        self.embed = nn.Sequential(_mlp([self.n_columns, embedding, embedding]), nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = observations[FEATURES_KEY]
        return torch.cat([rows, self.embed(rows)], dim=-1)


class PointerHead(nn.Module):
    """SB3's ``mlp_extractor`` slot: per-hole scores for the actor, pooled embeddings for the critic.

    ``latent_dim_pi`` is the number of actions (the scores are the logits, the policy's
    ``action_net`` passes them through); ``latent_dim_vf`` feeds SB3's ``value_net``.
    """

    def __init__(self, n_columns: int, embedding: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.n_columns = n_columns
        self.latent_dim_pi, self.latent_dim_vf = n_actions, hidden
        self.score = _mlp([embedding, hidden, 1])
        self.linear = nn.Linear(n_columns, 1, bias=False)
        # mean and max over holes: how good the grid still is on average and at its best
        self.pooled = nn.Sequential(_mlp([2 * embedding, hidden]), nn.ReLU())

    def forward(self, extracted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(extracted), self.forward_critic(extracted)

    def forward_actor(self, extracted: torch.Tensor) -> torch.Tensor:
        rows, embedded = extracted[..., : self.n_columns], extracted[..., self.n_columns :]
        return (self.score(embedded) + self.linear(rows)).squeeze(-1)

    def forward_critic(self, extracted: torch.Tensor) -> torch.Tensor:
        embedded = extracted[..., self.n_columns :]
        return self.pooled(torch.cat([embedded.mean(dim=-2), embedded.amax(dim=-2)], dim=-1))


class PerHolePolicy(MaskableActorCriticPolicy):
    """MaskablePPO's actor-critic with weights shared across holes (:class:`PerHoleExtractor`,
    :class:`PointerHead`). ``net_arch`` is ignored; ``features_extractor_kwargs={"embedding": D}``
    and ``head_hidden`` set the widths."""

    def __init__(self, *args: Any, head_hidden: int = 64, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", PerHoleExtractor)
        self.head_hidden = head_hidden
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        columns = self.features_extractor.n_columns
        self.mlp_extractor = PointerHead(
            columns, self.features_dim - columns, int(self.action_space.n), self.head_hidden
        )

    def _build(self, lr_schedule) -> None:
        # MaskableActorCriticPolicy._build would add Linear(N, N) after the scores (N^2 weights);
        # here the scores are the logits.
        self._build_mlp_extractor()
        self.action_net = nn.Identity()
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        if self.ortho_init:
            for module, gain in ((self.features_extractor, 2**0.5), (self.mlp_extractor, 2**0.5), (self.value_net, 1)):
                module.apply(lambda m, gain=gain: self.init_weights(m, gain=gain))
            # small last scoring layers: near-uniform choices among the allowed holes at first
            self.init_weights(self.mlp_extractor.score[-1], gain=0.01)
            nn.init.zeros_(self.mlp_extractor.linear.weight)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "head_hidden": self.head_hidden}


def load_per_hole_model(path: str, env, **kwargs: Any) -> MaskablePPO:
    """A saved per-hole MaskablePPO model, ready for ``env`` even when its hole count differs
    from the training environment's (another split, another grid): its weights do not depend on N."""
    custom = {"observation_space": env.observation_space, "action_space": env.action_space}
    return MaskablePPO.load(path, env=env, custom_objects=custom, **kwargs)
