"""Jobs that drive several rooms (features, training, serving, monitoring), at the top beside the CLI.

`demo` (the serving step of `nextbest demo`), `loop` (the closed-loop simulation), `retrain` (retraining on a
drift verdict, through the gate, then reloading the service) and `onboard` (a bank's tables to a served project).
The rooms never import this package.
"""
