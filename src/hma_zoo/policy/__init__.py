"""The world model's uses: policies, success judges, policy evaluation and synthetic data (HMA paper Tables 5-6).

* :mod:`hma_zoo.policy.tasks`: real simulators behind the task interface (:class:`RealTaskEnv`);
* :mod:`hma_zoo.policy.policies`: scripted experts, random and behaviour-cloning policies (one interface);
* :mod:`hma_zoo.policy.wm_env`: the world model behind the same interface (:class:`WorldModelTaskEnv`);
* :mod:`hma_zoo.policy.judge`: success judges (a frame classifier, and the state-probe rule);
* :mod:`hma_zoo.policy.evaluate`: ``hma-zoo policy-eval`` (rank policies in the world model and the real one);
* :mod:`hma_zoo.policy.generate`: ``hma-zoo generate`` (synthetic episodes from the world model).
"""
