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


# Fatal start-up errors: the agent prints one of these on stderr and exits 1 by itself.
QUEUES_MISSING = "Error: Could not start launch agent: Not all of requested queues (q1, q2) found\n"
CREDENTIALS_REJECTED = "Error: Failed to verify credentials with https://api.wandb.ai: user is not logged in\n"
"""A key W&B does not accept (wandb issues #7118, #5319; transcripts/bad_key)."""
CREDENTIALS_DENIED = "Error: Failed to verify credentials with https://api.wandb.ai: permission denied\n"
"""W&B's other wording of the same refusal (wandb issues #2966, #2657; transcripts/bad_key_permission_denied)."""
CREDENTIALS_REJECTED_OLD_SDK = "wandb: ERROR Error while calling W&B API: user is not logged in (<Response [401]>)\n"
"""The same refusal as SDKs before wandb-core printed it (wandb issue #7118)."""
WANDB_UNREACHABLE = (
    "Error: Failed to verify credentials with http://127.0.0.1:9: "
    "the service process is busy and did not respond in time\n"
)
CORE_RETRYING = (
    '{"time":"2026-11-28T10:00:01Z","level":"INFO","msg":"api: retrying error","error":'
    '"Post \\"http://127.0.0.1:9/graphql\\": dial tcp 127.0.0.1:9: connect: connection refused"}\n'
)
"""What wandb-core writes to its own log while W&B is unreachable (and the agent prints nothing)."""
NO_GCP_CREDENTIALS = (
    "wandb: ERROR launch: Error running job: Failed to create Vertex job: No Google Cloud Platform credentials "
    "found. Please run `gcloud auth application-default login` or set the environment variable "
    "GOOGLE_APPLICATION_CREDENTIALS to the path of a valid service account key file.\n"
)
GCP_UNAVAILABLE = (
    "google.api_core.exceptions.ServiceUnavailable: 503 errors resolving us-central1-aiplatform.googleapis.com\n"
)


def chained_grpc_traceback(last: str) -> str:
    """`Error running job:` with the traceback of an api_core error raised from a grpc one, as the
    agent prints it: one termerror call, every line prefixed, the trailing newline an empty line."""
    text = (
        "Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.11/site-packages/google/api_core/grpc_helpers.py", line 76, in '
        "error_remapped_callable\n"
        "    return callable_(*args, **kwargs)\n"
        "grpc._channel._InactiveRpcError: <_InactiveRpcError of RPC that terminated with:\n"
        "\tstatus = StatusCode.INVALID_ARGUMENT\n"
        '\tdetails = "List of found errors: 1.Field: job_spec.worker_pool_specs[0].machine_spec"\n'
        ">\n"
        "\n"
        "The above exception was the direct cause of the following exception:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.11/site-packages/wandb/sdk/launch/agent/agent.py", line 684, in '
        "task_run_job\n"
        "    await self._task_run_job(\n"
        f"{last}\n"
    )
    lines = ("launch: Error running job: " + text).split("\n")
    return "".join(f"wandb: ERROR {line}\n" for line in lines)


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
    "queue_not_found": QUEUES_MISSING,
    "wandb_credentials_rejected": CREDENTIALS_REJECTED,
    "wandb_unreachable": WANDB_UNREACHABLE,
    "gcp_credentials_missing": NO_GCP_CREDENTIALS,
    "gcp_unavailable": GCP_UNAVAILABLE,
    "wandb_connection_failing": CORE_RETRYING,
}
TIMES = {"repeated_failures": 3, "queue_pop_error": 3}
