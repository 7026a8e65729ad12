"""Jobs on Hugging Face Jobs hardware: staging (stage.py), the local runner that submits and mirrors a Job
(runner.py), what runs inside the Job (job.py) and the Job(s) of one job, one per node (hf_jobs.py)."""
