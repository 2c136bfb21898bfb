//! The tasks' handlers (`/api/v1/tasks/...`): they only translate HTTP to [`crate::tasks`],
//! and describe themselves for the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::guard::Caller;
use super::params::{TaskNodePath, TaskPath};
use crate::AppState;
use crate::dto::tasks::{CreateTask, TaskCreated, TaskDetail, TaskListQuery, TaskOutput, TaskPage};
use crate::error::ApiError;
use crate::tasks;

/// Runs a command or script on the chosen nodes; answers once the task is recorded.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    request_body = CreateTask,
    responses((status = 200, body = TaskCreated)),
)]
pub(super) async fn create_task(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::create(&state, req, &who.who()).await?))
}

/// One page of tasks, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "tasks",
    params(TaskListQuery),
    responses((status = 200, body = TaskPage)),
)]
pub(super) async fn list_tasks(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TaskListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::list(&state, query).await?))
}

/// One task with every target node's state and exit code.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    params(TaskPath),
    responses((status = 200, body = TaskDetail)),
)]
pub(super) async fn task_detail(
    State(state): State<AppState>,
    ApiPath(TaskPath { id }): ApiPath<TaskPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::detail(&state, &id).await?))
}

/// What one node printed for a task.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}/nodes/{node}/output",
    tag = "tasks",
    params(TaskNodePath),
    responses((status = 200, body = TaskOutput)),
)]
pub(super) async fn task_output(
    State(state): State<AppState>,
    ApiPath(TaskNodePath { id, node }): ApiPath<TaskNodePath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::output(&state, &id, &node).await?))
}

/// What one node prints for a task, live (server-sent events).
///
/// Server-sent events: `output` (JSON `{seq, stream, data}`) per chunk, then one `end` (JSON
/// `{state}`).
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}/nodes/{node}/output/live",
    tag = "tasks",
    params(TaskNodePath),
    responses((
        status = 200,
        description = "`output` events (`{seq, stream, data}`), then one `end` (`{state}`)",
        body = String,
        content_type = "text/event-stream",
    )),
)]
pub(super) async fn task_output_live(
    State(state): State<AppState>,
    ApiPath(TaskNodePath { id, node }): ApiPath<TaskNodePath>,
) -> Result<impl IntoResponse, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let rx = tasks::live_output(&state, &id, &node).await?;
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        let event = match item {
            tasks::Live::Output { seq, stream, data } => Event::default()
                .event("output")
                .json_data(serde_json::json!({ "seq": seq, "stream": stream, "data": data })),
            tasks::Live::End { state } => Event::default()
                .event("end")
                .json_data(serde_json::json!({ "state": state })),
        };
        Some((event, rx))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Cancels a task on every node where it has not finished.
#[utoipa::path(
    delete,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    params(TaskPath),
    responses((status = 200, body = TaskDetail)),
)]
pub(super) async fn cancel_task(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(TaskPath { id }): ApiPath<TaskPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::cancel(&state, &id, &who.who()).await?))
}
