"""Lines the real `wandb launch-agent` prints (wandb 0.31 source: termlog/termerror prefix every
line with `wandb: `, errors with `wandb: ERROR `; pop failures are a bare print on stdout)."""

from __future__ import annotations

RECEIVED = "wandb: launch: Launch agent received job:\n"


def payload(item_id: str, extra: str = "") -> str:
    """The pprint the agent prints after RECEIVED, ending with the blank prefixed line."""
    return (
        RECEIVED + f"wandb: {{'runQueueItemId': '{item_id}',\n"
        "wandb:  'runSpec': {'_wandb_api_key': '<redacted>',\n"
        "wandb:              'entity': 'team-ml',\n"
        "wandb:              'overrides': {'args': [],\n"
        "wandb:                            'run_config': {'MAX_TRAIN_SAMPLES': '500',\n"
        "wandb:                                           'lr': 0.0003" + extra + "},\n"
        "wandb:                            'entry_point': []},\n"
        "wandb:              'project': 'arr-coc',\n"
        "wandb:              'resource': 'gcp-vertex'}}\n"
        "wandb: \n"
    )


SUBMITTED_RESOURCE = "projects/123456/locations/us-central1/customJobs/7788990011"
SUBMITTED_LOG = (
    "2026-11-28 10:00:01,000 INFO    MainThread:1 [base.py:log():113] CustomJob created. "
    f"Resource name: {SUBMITTED_RESOURCE}\n"
)
STATUS = "wandb: launch: agent 8x7y polling on queues vertex-ai-queue, running 0 out of a maximum of 1 jobs\n"


def job_error_traceback(last: str) -> str:
    """`Error running job:` with a formatted traceback, as one termerror call prints it."""
    return (
        "wandb: ERROR launch: Error running job: Traceback (most recent call last):\n"
        'wandb: ERROR   File "/usr/local/lib/python3.11/site-packages/wandb/sdk/launch/agent/agent.py", '
        "line 684, in task_run_job\n"
        "wandb: ERROR     await self._task_run_job(\n"
        f"wandb: ERROR {last}\n"
    )


# One sample line per rule id: what makes the rule fire (windowed rules repeat it).
FIRING: dict[str, str] = {
    "machine_type_unsupported": "wandb: ERROR launch: Error running job: Machine type n1-standard-4 is not "
    "supported with NVIDIA_L4\n",
    "invalid_argument": "google.api_core.exceptions.InvalidArgument: 400 List of found errors: "
    "1.Field: job_spec.worker_pool_specs[0].machine_spec.machine_type\n",
    "permission_denied": "google.api_core.exceptions.PermissionDenied: 403 Permission "
    "'aiplatform.customJobs.create' denied on resource\n",
    "not_found": "google.api_core.exceptions.NotFound: 404 Artifact Registry repository not found\n",
    "quota_exceeded": "google.api_core.exceptions.ResourceExhausted: 429 Quota 'NVIDIA_L4_GPUS' exceeded. "
    "Limit: 0 in region us-central1.\n",
    "repeated_failures": "Job state: FAILED\n",
    "unhandled_exception": "Traceback (most recent call last):\n"
    '  File "/app/run.py", line 3, in <module>\n'
    "TypeError: 'NoneType' object is not subscriptable\n",
    "http_error": "googleapiclient.errors.HttpError: <HttpError 503 when requesting "
    'https://example.invalid/v1 returned "Service Unavailable">\n',
    "wandb_init_failed": "wandb: ERROR Failed to initialize wandb: Connection timeout\n",
    "image_pull_failed": "Back-off pulling image: ErrImagePull: denied: Permission denied for arr-trainer\n",
    "launch_job_error": "wandb: ERROR launch: Error running job: could not resolve the job\n",
    "queue_pop_error": "Exception: Could not pop from queue: 502 Bad Gateway\n",
    "network_retry_loop": "wandb: Network error (ConnectionError), entering retry loop.\n",
    "start_timeout": "wandb: ERROR launch: Error running job: Run failed to start within 900 seconds. "
    "Please check the logs.\n",
}
TIMES = {"repeated_failures": 3, "queue_pop_error": 3}
