//! JSON-RPC request handling above HTTP: parsing single and batch requests, choosing
//! the HTTP status and reply shape, and checking parameters against a method's
//! declaration, each as Bitcoin Core does it (`src/httprpc.cpp` `HTTPReq_JSONRPC`,
//! `src/rpc/request.cpp`, `src/rpc/server.cpp`, `src/rpc/util.cpp` `RPCHelpMan`).

use serde_json::{Map, Value};

use super::backend::RpcBackend;
use super::methods::COMMANDS;
use super::types::error_code::{
    RPC_INVALID_PARAMETER, RPC_INVALID_REQUEST, RPC_METHOD_NOT_FOUND, RPC_MISC_ERROR,
    RPC_PARSE_ERROR, RPC_TYPE_ERROR,
};
use super::types::RpcError;

/// What the HTTP layer sends back for a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpReply {
    /// HTTP status code.
    pub status: u16,
    /// JSON text (newline-terminated, as Core writes it); `None` for 204 No Content.
    pub body: Option<String>,
}

/// JSON-RPC dialect of one request (Core's `JSONRPCVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// No `jsonrpc` key, or `"1.0"`: reply has both `result` and `error`; failures map
    /// to HTTP error statuses.
    V1Legacy,
    /// `"jsonrpc": "2.0"`: reply has one of `result`/`error`, HTTP 200, and requests
    /// without an `id` are notifications that get no reply.
    V2,
}

/// Core's `JSONRPCRequest`: the parsed state of the request being handled.
///
/// Kept across a batch's elements on purpose: Core reuses one object, so an element
/// that is not even an object is answered with the id and dialect of the element before it.
#[derive(Debug, Clone)]
struct Request {
    /// `None` when the request had no `id` key (distinct from `"id": null`).
    id: Option<Value>,
    version: Version,
    method: String,
    params: Value,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            id: None,
            version: Version::V1Legacy,
            method: String::new(),
            params: Value::Array(Vec::new()),
        }
    }
}

impl Request {
    /// Core's `JSONRPCRequest::parse`, with its messages and their order.
    fn parse(&mut self, value: &Value) -> Result<(), RpcError> {
        let Value::Object(obj) = value else {
            return Err(RpcError::new(RPC_INVALID_REQUEST, "Invalid Request object"));
        };
        // Taken first so that every later error carries the id.
        self.id = obj.get("id").cloned();
        self.version = Version::V1Legacy;
        match obj.get("jsonrpc") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "1.0" => {}
            Some(Value::String(s)) if s == "2.0" => self.version = Version::V2,
            Some(Value::String(_)) => {
                return Err(RpcError::new(
                    RPC_INVALID_REQUEST,
                    "JSON-RPC version not supported",
                ))
            }
            Some(_) => {
                return Err(RpcError::new(
                    RPC_INVALID_REQUEST,
                    "jsonrpc field must be a string",
                ))
            }
        }
        self.method = match obj.get("method") {
            None | Some(Value::Null) => {
                return Err(RpcError::new(RPC_INVALID_REQUEST, "Missing method"))
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(RpcError::new(
                    RPC_INVALID_REQUEST,
                    "Method must be a string",
                ))
            }
        };
        self.params = match obj.get("params") {
            None | Some(Value::Null) => Value::Array(Vec::new()),
            Some(p @ (Value::Array(_) | Value::Object(_))) => p.clone(),
            Some(_) => {
                return Err(RpcError::new(
                    RPC_INVALID_REQUEST,
                    "Params must be an array or object",
                ))
            }
        };
        Ok(())
    }

    fn is_notification(&self) -> bool {
        self.id.is_none() && self.version == Version::V2
    }
}

/// Core's `JSONRPCReplyObj`: `{"result","error","id"}` for 1.0; `{"jsonrpc","result"|"error","id"}`
/// for 2.0; `id` left out when the request had none.
fn reply_object(outcome: Result<Value, RpcError>, req: &Request) -> Value {
    let mut reply = Map::new();
    if req.version == Version::V2 {
        reply.insert("jsonrpc".into(), "2.0".into());
    }
    match outcome {
        Ok(result) => {
            reply.insert("result".into(), result);
            if req.version == Version::V1Legacy {
                reply.insert("error".into(), Value::Null);
            }
        }
        Err(err) => {
            if req.version == Version::V1Legacy {
                reply.insert("result".into(), Value::Null);
            }
            reply.insert("error".into(), error_object(&err));
        }
    }
    if let Some(id) = &req.id {
        reply.insert("id".into(), id.clone());
    }
    Value::Object(reply)
}

fn error_object(err: &RpcError) -> Value {
    let mut obj = Map::new();
    obj.insert("code".into(), err.code.into());
    obj.insert("message".into(), err.message.clone().into());
    Value::Object(obj)
}

fn json_body(value: &Value) -> Option<String> {
    // Core terminates every JSON reply with a newline.
    Some(format!("{value}\n"))
}

/// Core's `JSONErrorReply`: HTTP 400 for an invalid request, 404 for an unknown method,
/// 500 for everything else.
fn error_reply(err: RpcError, req: &Request) -> HttpReply {
    let status = match err.code {
        RPC_INVALID_REQUEST => 400,
        RPC_METHOD_NOT_FOUND => 404,
        _ => 500,
    };
    HttpReply {
        status,
        body: json_body(&reply_object(Err(err), req)),
    }
}

/// Handles one authenticated POST body: a single request or a batch.
pub(crate) fn handle_body(body: &[u8], backend: &dyn RpcBackend) -> HttpReply {
    let mut req = Request::default();
    match handle_parsed(body, backend, &mut req) {
        Ok(reply) => reply,
        Err(err) => error_reply(err, &req),
    }
}

fn handle_parsed(
    body: &[u8],
    backend: &dyn RpcBackend,
    req: &mut Request,
) -> Result<HttpReply, RpcError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| RpcError::new(RPC_PARSE_ERROR, "Parse error"))?;
    let reply = match &value {
        Value::Object(_) => {
            req.parse(&value)?;
            let outcome = execute(&req.method, &req.params, backend);
            if req.version == Version::V1Legacy {
                // 1.0: a failure becomes an HTTP error status (the caller's `error_reply`).
                reply_object(Ok(outcome?), req)
            } else {
                // 2.0: failures are answered with 200, and notifications not at all.
                let reply = reply_object(outcome, req);
                if req.is_notification() {
                    return Ok(no_content());
                }
                reply
            }
        }
        Value::Array(items) => {
            // Batches never produce HTTP errors; each element gets its own reply.
            let mut replies = Vec::with_capacity(items.len());
            for item in items {
                let outcome = match req.parse(item) {
                    Ok(()) => execute(&req.method, &req.params, backend),
                    Err(err) => Err(err),
                };
                if !req.is_notification() {
                    replies.push(reply_object(outcome, req));
                }
            }
            // An all-notification batch gets 204, but an empty batch gets `[]`: Core keeps
            // that for clients older than JSON-RPC 2.0 support.
            if replies.is_empty() && !items.is_empty() {
                return Ok(no_content());
            }
            Value::Array(replies)
        }
        _ => {
            return Err(RpcError::new(
                RPC_PARSE_ERROR,
                "Top-level object parse error",
            ))
        }
    };
    Ok(HttpReply {
        status: 200,
        body: json_body(&reply),
    })
}

fn no_content() -> HttpReply {
    HttpReply {
        status: 204,
        body: None,
    }
}

/// JSON type a declared argument must have (Core's `RPCArg::Type`, reduced to what the
/// methods here use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgType {
    Str,
    Num,
    Bool,
}

impl ArgType {
    /// Core's `uvTypeName` for the expected JSON type.
    fn json_name(self) -> &'static str {
        match self {
            ArgType::Str => "string",
            ArgType::Num => "number",
            ArgType::Bool => "bool",
        }
    }

    /// The type as help text names it.
    fn help_name(self) -> &'static str {
        match self {
            ArgType::Str => "string",
            ArgType::Num => "numeric",
            ArgType::Bool => "boolean",
        }
    }

    fn matches(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (ArgType::Str, Value::String(_))
                | (ArgType::Num, Value::Number(_))
                | (ArgType::Bool, Value::Bool(_))
        )
    }
}

/// Core's `uvTypeName` for a JSON value.
fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One declared argument of a method.
#[derive(Debug)]
pub(crate) struct Arg {
    /// Name, for named parameters and help.
    pub name: &'static str,
    pub ty: ArgType,
    pub required: bool,
    /// Default as help text shows it (`None`: no default shown).
    pub default: Option<&'static str>,
    /// Left out of help, as Core's `hidden` arguments (e.g. `stop`'s `wait`).
    pub hidden: bool,
    pub doc: &'static str,
}

/// A method handler: the backend and the positional parameters, already checked for count
/// and JSON types.
pub(crate) type Handler = fn(&dyn RpcBackend, &[Value]) -> Result<Value, RpcError>;

/// One RPC method: its declaration (Core's `RPCHelpMan`) and handler.
pub(crate) struct Command {
    pub name: &'static str,
    /// Help category, lowercase as Core's (`"blockchain"`, `"control"`, `"network"`).
    pub category: &'static str,
    pub args: &'static [Arg],
    pub description: &'static str,
    /// The "Result:" section of the help text.
    pub result: &'static str,
    pub handler: Handler,
}

impl Command {
    /// The one-line usage, Core's `RPCHelpMan::ToString` first line: strings quoted,
    /// optional arguments grouped in `( … )`, hidden ones left out.
    pub fn usage(&self) -> String {
        let mut line = self.name.to_string();
        let mut in_optional = false;
        for arg in self.args.iter().take_while(|a| !a.hidden) {
            line.push(' ');
            if !arg.required {
                if !in_optional {
                    line.push_str("( ");
                }
                in_optional = true;
            } else {
                if in_optional {
                    line.push_str(") ");
                }
                in_optional = false;
            }
            if arg.ty == ArgType::Str {
                line.push_str(&format!("\"{}\"", arg.name));
            } else {
                line.push_str(arg.name);
            }
        }
        if in_optional {
            line.push_str(" )");
        }
        line
    }

    /// Full help text: usage, description, arguments, result.
    pub fn help(&self) -> String {
        let mut text = format!("{}\n\n{}\n", self.usage(), self.description);
        let visible: Vec<&Arg> = self.args.iter().take_while(|a| !a.hidden).collect();
        if !visible.is_empty() {
            text.push_str("\nArguments:\n");
            for (i, arg) in visible.iter().enumerate() {
                let req = match (arg.required, arg.default) {
                    (true, _) => "required".to_string(),
                    (false, Some(d)) => format!("optional, default={d}"),
                    (false, None) => "optional".to_string(),
                };
                text.push_str(&format!(
                    "{}. {}    ({}, {}) {}\n",
                    i + 1,
                    arg.name,
                    arg.ty.help_name(),
                    req,
                    arg.doc
                ));
            }
        }
        text.push_str(&format!("\nResult:\n{}\n", self.result));
        text
    }

    /// Core's `RPCHelpMan::HandleRequest` checks: the count (else the help text as an
    /// `RPC_MISC_ERROR`), then every argument's JSON type (else one `RPC_TYPE_ERROR`
    /// listing all mismatches).
    fn check_args(&self, params: &[Value]) -> Result<(), RpcError> {
        let required = self.args.iter().filter(|a| a.required).count();
        if params.len() < required || params.len() > self.args.len() {
            return Err(RpcError::new(RPC_MISC_ERROR, self.help()));
        }
        let mut mismatches = Map::new();
        for (i, arg) in self.args.iter().enumerate() {
            let value = params.get(i).unwrap_or(&Value::Null);
            if (!arg.required && value.is_null()) || arg.ty.matches(value) {
                continue;
            }
            mismatches.insert(
                format!("Position {} ({})", i + 1, arg.name),
                format!(
                    "JSON value of type {} is not of expected type {}",
                    json_type_name(value),
                    arg.ty.json_name()
                )
                .into(),
            );
        }
        if mismatches.is_empty() {
            return Ok(());
        }
        Err(RpcError::new(
            RPC_TYPE_ERROR,
            format!(
                "Wrong type passed:\n{}",
                to_string_pretty4(&Value::Object(mismatches))
            ),
        ))
    }

    /// Core's `transformNamedArguments`: named parameters to positions, nulls filling the
    /// gaps between given ones (but not after the last), and an `args` array supplying
    /// leading positional values.
    fn positional_from_named(&self, named: &Map<String, Value>) -> Result<Vec<Value>, RpcError> {
        let mut remaining = named.clone();
        let mut out: Vec<Value> = Vec::new();
        let mut hole = 0usize;
        let mut initial_hole = 0usize;
        let mut first_named: Option<&str> = None;
        for arg in self.args {
            if let Some(value) = remaining.remove(arg.name) {
                out.extend(std::iter::repeat_n(Value::Null, hole));
                hole = 0;
                first_named.get_or_insert(arg.name);
                out.push(value);
            } else {
                hole += 1;
                if out.is_empty() {
                    initial_hole = hole;
                }
            }
        }
        if let Some(Value::Array(positional)) = remaining.remove("args") {
            if let Some(name) = first_named {
                if initial_hole < positional.len() {
                    return Err(RpcError::new(
                        RPC_INVALID_PARAMETER,
                        format!(
                            "Parameter {name} specified twice both as positional and named argument"
                        ),
                    ));
                }
            }
            let named_values = std::mem::replace(&mut out, positional);
            if named_values.len() > out.len() {
                let skip = out.len();
                out.extend(named_values.into_iter().skip(skip));
            }
        }
        if let Some(key) = remaining.keys().next() {
            return Err(RpcError::new(
                RPC_INVALID_PARAMETER,
                format!("Unknown named parameter {key}"),
            ));
        }
        Ok(out)
    }
}

/// JSON with four-space indentation, as UniValue's `write(4)` lays it out.
fn to_string_pretty4(value: &Value) -> String {
    use serde::Serialize as _;
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    // Serializing a Value into memory cannot fail.
    value.serialize(&mut ser).expect("serialize JSON value");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// Core's `CRPCTable::execute`: find the method, map named parameters, check, run.
pub(crate) fn execute(
    method: &str,
    params: &Value,
    backend: &dyn RpcBackend,
) -> Result<Value, RpcError> {
    let command = find_command(method)
        .ok_or_else(|| RpcError::new(RPC_METHOD_NOT_FOUND, "Method not found"))?;
    let positional = match params {
        Value::Object(named) => command.positional_from_named(named)?,
        Value::Array(list) => list.clone(),
        // `Request::parse` lets only arrays and objects through.
        _ => Vec::new(),
    };
    command.check_args(&positional)?;
    (command.handler)(backend, &positional)
}

pub(crate) fn find_command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}
