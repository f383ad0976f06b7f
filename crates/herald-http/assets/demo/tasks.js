// The person's tasks: loaded over REST, changed with versioned requests, kept live by the user
// channel's task events (a version never goes back; a deleted task never comes back).

import { api, listAll } from "./api.js";
import { $, byId, el, notice } from "./dom.js";
import { state } from "./state.js";

export async function reloadTasks() {
  const items = await listAll("/tasks");
  state.tasks = new Map(items.filter((t) => !state.deletedTasks.has(t.id)).map((t) => [t.id, t]));
  renderTasks();
}

export function upsertTask(task) {
  if (!task || !task.id || state.deletedTasks.has(task.id)) return;
  const current = state.tasks.get(task.id);
  if (!current || (task.version ?? 0) >= (current.version ?? 0)) state.tasks.set(task.id, task);
  renderTasks();
}

export function removeTask(id) {
  if (!id) return;
  state.deletedTasks.add(id);
  state.tasks.delete(id);
  renderTasks();
}

function renderTasks() {
  const tasks = [...state.tasks.values()].sort(byId);
  $("tasks").replaceChildren(
    ...tasks.map((t) =>
      el(
        "li",
        { "data-testid": "task", "data-task-id": t.id, "data-status": t.status, "data-version": t.version },
        el("input", {
          type: "checkbox",
          "data-testid": "task-done",
          "aria-label": "Done",
          checked: t.status === "done",
          onchange: () => toggleTask(t.id),
        }),
        el("span", { class: "title", "data-testid": "task-title-text" }, t.title),
        el("button", { type: "button", class: "quiet", "data-testid": "task-delete", onclick: () => deleteTask(t.id) }, "Delete"),
      ),
    ),
  );
  $("tasks-empty").hidden = tasks.length > 0;
}

export async function addTask(title) {
  upsertTask(await api("POST", "/tasks", { title }));
}

async function toggleTask(id) {
  const task = state.tasks.get(id);
  if (!task) return;
  const status = task.status === "done" ? "todo" : "done";
  try {
    upsertTask(await api("PATCH", `/tasks/${id}`, { status }, { "If-Match": `"${task.version}"` }));
  } catch (err) {
    if (err.status === 412) {
      notice("That task changed elsewhere; here is its latest version.");
      upsertTask(await api("GET", `/tasks/${id}`).catch(() => null));
    } else if (err.status === 404) {
      removeTask(id);
    } else {
      notice(err.message);
    }
    renderTasks();
  }
}

async function deleteTask(id) {
  try {
    await api("DELETE", `/tasks/${id}`);
    removeTask(id);
  } catch (err) {
    if (err.status === 404) removeTask(id);
    else notice(err.message);
  }
}
