-- Runs an Argo CD resource health script the way Argo CD does: the resource is the global `obj`,
-- the script is one chunk that returns `hs = {status, message}`, and only the libraries Argo CD
-- opens are visible (base, table, string, math, a safe subset of os).
--
-- Usage: lua5.4 health_driver.lua <health.lua>  < object.json
-- Prints the status on the first line and the message on the second.

local function decode_json(text)
  local pos = 1

  local function fail(what)
    error(string.format("JSON: %s at byte %d", what, pos), 0)
  end

  local function skip()
    pos = text:find("[^ \t\r\n]", pos) or (#text + 1)
  end

  local value

  local function parse_string()
    pos = pos + 1 -- opening quote
    local parts = {}
    while true do
      local c = text:sub(pos, pos)
      if c == "" then
        fail("unterminated string")
      elseif c == '"' then
        pos = pos + 1
        return table.concat(parts)
      elseif c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        local simple = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if simple[e] then
          parts[#parts + 1] = simple[e]
          pos = pos + 2
        elseif e == "u" then
          local code = tonumber(text:sub(pos + 2, pos + 5), 16) or fail("bad \\u escape")
          pos = pos + 6
          if code >= 0xD800 and code <= 0xDBFF and text:sub(pos, pos + 1) == "\\u" then
            local low = tonumber(text:sub(pos + 2, pos + 5), 16) or fail("bad \\u escape")
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            pos = pos + 6
          end
          parts[#parts + 1] = utf8.char(code)
        else
          fail("bad escape")
        end
      else
        local stop = text:find('["\\]', pos) or fail("unterminated string")
        parts[#parts + 1] = text:sub(pos, stop - 1)
        pos = stop
      end
    end
  end

  local function parse_number()
    local s, e = text:find("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not s then
      fail("bad number")
    end
    local n = tonumber(text:sub(s, e)) or fail("bad number")
    pos = e + 1
    return math.tointeger(n) or n
  end

  function value()
    skip()
    local c = text:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local obj = {}
      skip()
      if text:sub(pos, pos) == "}" then
        pos = pos + 1
        return obj
      end
      while true do
        skip()
        if text:sub(pos, pos) ~= '"' then
          fail("expected key")
        end
        local k = parse_string()
        skip()
        if text:sub(pos, pos) ~= ":" then
          fail("expected ':'")
        end
        pos = pos + 1
        obj[k] = value()
        skip()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "}" then
          return obj
        elseif d ~= "," then
          fail("expected ',' or '}'")
        end
      end
    elseif c == "[" then
      pos = pos + 1
      local arr = {}
      skip()
      if text:sub(pos, pos) == "]" then
        pos = pos + 1
        return arr
      end
      while true do
        arr[#arr + 1] = value()
        skip()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "]" then
          return arr
        elseif d ~= "," then
          fail("expected ',' or ']'")
        end
      end
    elseif c == '"' then
      return parse_string()
    elseif text:sub(pos, pos + 3) == "true" then
      pos = pos + 4
      return true
    elseif text:sub(pos, pos + 4) == "false" then
      pos = pos + 5
      return false
    elseif text:sub(pos, pos + 3) == "null" then
      pos = pos + 4
      return nil
    else
      return parse_number()
    end
  end

  local result = value()
  skip()
  if pos <= #text then
    fail("trailing data")
  end
  return result
end

local script_path = assert(arg[1], "usage: health_driver.lua <health.lua> < object.json")
local obj = decode_json(io.read("a"))

local env = {
  obj = obj,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = table.unpack,
  string = string, table = table, math = math,
  os = { time = os.time, date = os.date, clock = os.clock },
}
local f = assert(io.open(script_path, "r"))
local source = f:read("a")
f:close()
local chunk = assert(load(source, "@" .. script_path, "t", env))
local hs = chunk()
if type(hs) ~= "table" then
  error("health script returned " .. type(hs) .. ", not a table", 0)
end
io.write(tostring(hs.status), "\n", tostring(hs.message), "\n")
