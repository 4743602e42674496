"""Run the real state machine and handlers on this machine: moto's Step Functions engine, no AWS, no Docker."""
