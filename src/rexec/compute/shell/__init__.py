"""What runs in the worker processes, as the shell account: the template's fork loop and
each shell's QAP session. Session R code runs here, so the supervisor trusts none of it."""
