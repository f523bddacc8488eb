// The trigger form's typed params: JSON fields are checked as they are typed (the
// browser then refuses to submit them), and "Recent params" fills the fields with a set
// used before. The server checks everything again against the schedule's schema.
(function () {
  "use strict";

  function checkJson(area) {
    var text = area.value.trim();
    var message = "";
    if (text) {
      try {
        var value = JSON.parse(text);
        if (area.name === "params" && (value === null || typeof value !== "object" || Array.isArray(value))) {
          message = "Params must be a JSON object";
        }
      } catch (error) {
        message = "Not valid JSON: " + error.message;
      }
    }
    area.setCustomValidity(message);
    area.title = message;
  }

  function fill(form, params) {
    var rest = {};
    Object.keys(params).forEach(function (key) {
      var value = params[key];
      var field = form.querySelector('[data-param="' + CSS.escape(key) + '"]');
      if (!field) {
        rest[key] = value;
      } else if (field.type === "checkbox") {
        field.checked = value === true;
      } else if (field.tagName === "SELECT" || field.hasAttribute("data-json")) {
        field.value = JSON.stringify(value);
      } else {
        field.value = value === null ? "" : String(value);
      }
    });
    var more = form.querySelector('textarea[name="params"]');
    if (more) {
      more.value = JSON.stringify(rest, null, 2);
    }
    form.querySelectorAll("textarea[data-json]").forEach(checkJson);
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-json]")) {
      checkJson(event.target);
    }
  });
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!select.matches || !select.matches("select.recent-params") || !select.value) {
      return;
    }
    fill(select.form, JSON.parse(select.value));
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-json]").forEach(checkJson);
  });
})();
